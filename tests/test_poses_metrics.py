"""Pose metrics against scipy and brute-force loops: rotation errors, aggregation of hypotheses
(mean, Weiszfeld median, medoid), circular statistics, the oracle, MMD and mode coverage."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from anydiff.poses.metrics import (aggregate_angles, aggregate_positions, aggregate_rotations,
                                   best_of_hypotheses_oracle, geodesic_mmd, mode_coverage,
                                   rotation_error_deg, symmetric_rotation_error_deg)
from anydiff.poses.rotations import cyclic_group, dihedral_group, random_rotations

FAST = settings(max_examples=25, deadline=None)


def T(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def angle(A, B):
    """Geodesic angle (radians) between two matrices, by scipy."""
    return (Rotation.from_matrix(A).inv() * Rotation.from_matrix(B)).magnitude()


def near(center, n, scale_rad, seed):
    """n rotations around ``center`` (scipy Rotation), perturbed by Gaussian rotation vectors."""
    rng = np.random.default_rng(seed)
    return (center * Rotation.from_rotvec(scale_rad * rng.standard_normal((n, 3)))).as_matrix()


# -- errors ----------------------------------------------------------------------------------
def test_rotation_error_deg_matches_scipy_and_keeps_the_type():
    a, b = Rotation.random(50, random_state=0), Rotation.random(50, random_state=1)
    expected = np.degrees((a.inv() * b).magnitude())
    out_np = rotation_error_deg(a.as_matrix(), b.as_matrix())
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_np, expected, atol=1e-5)
    out_t = rotation_error_deg(T(a.as_matrix()), T(b.as_matrix()))
    assert torch.is_tensor(out_t)
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-5)


def test_symmetric_error_is_the_minimum_over_the_group():
    G = dihedral_group(3).numpy()
    truth = Rotation.random(20, random_state=2).as_matrix()
    pred = Rotation.random(20, random_state=3).as_matrix()
    expected = [min(np.degrees(angle(p, t @ S)) for S in G) for p, t in zip(pred, truth)]
    np.testing.assert_allclose(symmetric_rotation_error_deg(pred, truth, G), expected, atol=1e-5)
    # a prediction equal to the truth up to a symmetry has zero error, the plain error does not
    pred_sym = truth @ G[4]
    assert symmetric_rotation_error_deg(pred_sym, truth, G).max() < 1e-5
    assert rotation_error_deg(pred_sym, truth).min() > 1.0
    with pytest.raises(ValueError, match="symmetries must have shape"):
        symmetric_rotation_error_deg(pred, truth, G[0])


# -- aggregation of rotations ----------------------------------------------------------------
def geodesic_sum(M, R):
    return sum(angle(M, Ri) for Ri in R)


def test_weiszfeld_median_is_robust_where_the_mean_is_not():
    center = Rotation.random(random_state=4)
    inliers = near(center, 15, np.radians(0.5), 5)
    outlier = (center * Rotation.from_rotvec([2.5, 0.0, 0.0])).as_matrix()  # 143 degrees off
    R = np.concatenate([inliers, outlier[None]])
    moved = {m: np.degrees(angle(aggregate_rotations(R, m), aggregate_rotations(inliers, m)))
             for m in ["median", "mean"]}
    assert moved["mean"] > 1.5
    assert moved["median"] < moved["mean"] / 10
    assert np.degrees(angle(aggregate_rotations(R, "median"), center.as_matrix())) < 1.0


def test_weiszfeld_median_minimizes_the_geodesic_sum():
    R = near(Rotation.random(random_state=6), 9, 0.5, 7)
    median = aggregate_rotations(T(R), "median").numpy()
    # brute force: minimize sum of angles over rotation vectors around the result and the inputs
    starts = [Rotation.from_matrix(median).as_rotvec(), Rotation.from_matrix(R[0]).as_rotvec()]
    best = min(minimize(lambda v: geodesic_sum(Rotation.from_rotvec(v).as_matrix(), R), s,
                        method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}).fun
               for s in starts)
    assert geodesic_sum(median, R) <= best + 1e-7


def test_medoid_is_an_input_minimizing_the_brute_force_sum():
    R = Rotation.random(11, random_state=8).as_matrix()
    medoid = aggregate_rotations(R, "medoid")
    sums = [geodesic_sum(Ri, R) for Ri in R]
    np.testing.assert_allclose(medoid, R[int(np.argmin(sums))], atol=0)


def test_aggregate_rotations_along_a_dim():
    R = random_rotations(24, generator=torch.Generator().manual_seed(1)).reshape(2, 4, 3, 3, 3)
    for method in ["mean", "median", "medoid"]:
        out = aggregate_rotations(R, method, dim=2)
        assert out.shape == (2, 4, 3, 3)
        np.testing.assert_allclose(out[1, 2].numpy(), aggregate_rotations(R[1, 2], method).numpy(),
                                   atol=1e-10)
    with pytest.raises(ValueError, match="method="):
        aggregate_rotations(R, "mode")
    for bad in [-1, -2, 3, 5]:
        with pytest.raises(ValueError, match="dim="):
            aggregate_rotations(R, dim=bad)
    with pytest.raises(ValueError, match="dim="):
        aggregate_positions(torch.zeros(4, 3), dim=-1)
    np.testing.assert_allclose(aggregate_rotations(R, "mean", dim=-3).numpy(),
                               aggregate_rotations(R, "mean", dim=2).numpy())


# -- positions and angles --------------------------------------------------------------------
def test_aggregate_positions_against_references():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((13, 3))
    np.testing.assert_allclose(aggregate_positions(x, "mean"), x.mean(0))
    cost = lambda y: np.linalg.norm(x - y, axis=1).sum()  # noqa: E731
    ref = minimize(cost, x.mean(0), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}).x
    med = aggregate_positions(T(x), "median").numpy()
    assert cost(med) <= cost(ref) + 1e-9
    sums = [cost(xi) for xi in x]
    np.testing.assert_array_equal(aggregate_positions(x, "medoid"), x[int(np.argmin(sums))])
    # robust: one far outlier among points near the origin
    y = np.vstack([0.01 * rng.standard_normal((10, 2)), [[100.0, 100.0]]])
    assert np.linalg.norm(aggregate_positions(y, "median")) < 0.05
    assert np.linalg.norm(aggregate_positions(y, "mean")) > 5
    batched = aggregate_positions(T(rng.standard_normal((2, 5, 7, 3))), "median", dim=1)
    assert batched.shape == (2, 7, 3)


def test_circular_mean_across_the_wrap():
    out = aggregate_angles(np.radians([179.0, -179.0]), "mean")
    assert abs(np.cos(out - np.pi) - 1) < 1e-12  # 180 degrees, whichever sign of pi
    np.testing.assert_allclose(aggregate_angles(np.radians([10.0, 30.0]), "mean"), np.radians(20.0))


def arc_cost(phi, theta):
    return np.abs((theta - phi + np.pi) % (2 * np.pi) - np.pi).sum()


@FAST
@given(arrays(np.float64, st.integers(1, 9), elements=st.floats(-np.pi, np.pi, width=64)))
def test_circular_median_and_medoid_brute_force(theta):
    grid = np.concatenate([np.linspace(-np.pi, np.pi, 20001), theta])
    best = np.abs((theta[None] - grid[:, None] + np.pi) % (2 * np.pi) - np.pi).sum(1).min()
    med = float(aggregate_angles(theta, "median"))
    assert arc_cost(med, theta) <= best + 1e-9
    medoid = float(aggregate_angles(T(theta), "medoid"))
    assert np.isclose(np.cos(medoid - theta), 1).any()  # one of the inputs
    assert arc_cost(medoid, theta) <= min(arc_cost(t, theta) for t in theta) + 1e-12


def test_circular_median_across_the_wrap():
    theta = np.radians([170.0, 175.0, -178.0, -170.0, 178.0])
    med = aggregate_angles(theta, "median")
    assert abs(np.degrees(med) - 178.0) < 1e-9  # the middle one on the arc through 180


# -- the oracle ------------------------------------------------------------------------------
def test_oracle_against_a_loop():
    rng = np.random.default_rng(10)
    hyp = rng.standard_normal((6, 4, 3))  # H=6 hypotheses of 4 points
    truth = rng.standard_normal((4, 3))
    best, dist = best_of_hypotheses_oracle(hyp, truth, "euclidean")
    for k in range(4):
        d = [np.linalg.norm(hyp[h, k] - truth[k]) for h in range(6)]
        np.testing.assert_array_equal(best[k], hyp[int(np.argmin(d)), k])
        assert dist[k] == pytest.approx(min(d))

    R = random_rotations(15, generator=torch.Generator().manual_seed(2)).reshape(3, 5, 3, 3)
    R_true = random_rotations(3, generator=torch.Generator().manual_seed(3))
    best, dist = best_of_hypotheses_oracle(R, R_true, "geodesic", dim=1)
    for i in range(3):
        d = [angle(R[i, h].numpy(), R_true[i].numpy()) for h in range(5)]
        assert torch.equal(best[i], R[i, int(np.argmin(d))])
        assert float(dist[i]) == pytest.approx(min(d), abs=1e-7)

    mpjpe = lambda a, b: (a - b).norm(dim=-1).mean(-1)  # noqa: E731  a callable reducing (J, 3)
    best, dist = best_of_hypotheses_oracle(T(hyp), T(truth), mpjpe)
    d = [np.linalg.norm(hyp[h] - truth, axis=-1).mean() for h in range(6)]
    np.testing.assert_array_equal(best.numpy(), hyp[int(np.argmin(d))])
    assert float(dist) == pytest.approx(min(d))
    with pytest.raises(ValueError, match="distance="):
        best_of_hypotheses_oracle(hyp, truth, "l1")


# -- distributions ---------------------------------------------------------------------------
def test_geodesic_mmd_separates_and_is_symmetric():
    gen = torch.Generator().manual_seed(4)
    U1, U2 = random_rotations(150, generator=gen), random_rotations(120, generator=gen)
    C = T(near(Rotation.identity(), 100, 0.2, 11))
    same, diff = geodesic_mmd(U1, U2), geodesic_mmd(U1, C)
    assert abs(same) < 0.1 * diff
    assert geodesic_mmd(U1, C) == geodesic_mmd(C, U1)
    assert geodesic_mmd(U1, U2, bandwidth=0.5) == geodesic_mmd(U2, U1, bandwidth=0.5)


def test_geodesic_mmd_against_a_loop():
    A = Rotation.random(6, random_state=12).as_matrix()
    B = Rotation.random(5, random_state=13).as_matrix()
    k = lambda X, Y: np.exp(-angle(X, Y) ** 2 / (2 * 0.7 ** 2))  # noqa: E731
    aa = np.mean([k(A[i], A[j]) for i in range(6) for j in range(6) if i != j])
    bb = np.mean([k(B[i], B[j]) for i in range(5) for j in range(5) if i != j])
    ab = np.mean([k(a, b) for a in A for b in B])
    assert geodesic_mmd(A, B, bandwidth=0.7) == pytest.approx(aa + bb - 2 * ab, abs=1e-9)
    with pytest.raises(ValueError, match="bandwidth="):
        geodesic_mmd(A, B, bandwidth=0)
    with pytest.raises(ValueError, match="at least 2"):
        geodesic_mmd(A[:1], B)


def test_mode_coverage_three_of_four_modes():
    modes = cyclic_group(4, "x").numpy() @ Rotation.random(random_state=14).as_matrix()
    samples = np.concatenate([near(Rotation.from_matrix(modes[j]), 10, np.radians(2.0), 15 + j)
                              for j in range(3)])
    out = mode_coverage(samples, modes, threshold_deg=15.0)
    assert out["coverage"] == 0.75
    assert out["precision"] == 1.0
    np.testing.assert_array_equal(out["counts"], [10, 10, 10, 0])
    far = Rotation.from_rotvec([0.0, 1.0, 0.0]) * Rotation.from_matrix(modes[0])
    out = mode_coverage(np.concatenate([samples, far.as_matrix()[None]]), modes)
    assert out["precision"] == pytest.approx(30 / 31)
