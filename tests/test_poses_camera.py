"""The keypoint camera: projection against a numpy loop and OpenCV, the reprojection error's
gradient, the symmetric objects' identical observations, the noise / occlusion statistics and the
errors raised for bad input."""
import numpy as np
import pytest
import torch

from anydiff.poses.camera import (OBJECTS, SYMMETRIES, canonical_order, default_intrinsics, make_keypoint_views,
                                  observe_keypoints, project, reprojection_error, symmetry_orbits)
from anydiff.poses.rotations import cyclic_group, dihedral_group, random_rotations

K = default_intrinsics()


def poses(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = random_rotations(n, generator=g)
    t = torch.cat([torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5,
                   4 + 4 * torch.rand(n, 1, generator=g, dtype=torch.float64)], dim=-1)
    return R, t


# -- projection --------------------------------------------------------------------------------
def test_project_matches_a_numpy_loop_with_skew_and_broadcasting():
    R, t = poses(6)
    X = OBJECTS["box"]
    Ks = np.array([[500.0, 2.0, 300.0], [0.0, 450.0, 200.0], [0.0, 0.0, 1.0]])
    uv = project(X, R, t, torch.from_numpy(Ks))
    assert uv.shape == (6, 8, 2) and uv.dtype == torch.float64
    for b in range(6):
        for i in range(8):
            xc = R[b].numpy() @ X[i].numpy() + t[b].numpy()
            h = Ks @ xc
            np.testing.assert_allclose(uv[b, i].numpy(), h[:2] / h[2], rtol=1e-12, atol=1e-9)
    # per-pose points (..., N, 3) broadcast too
    assert torch.allclose(project(X.expand(6, 8, 3), R, t, K), project(X, R, t, K))


def test_project_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    R, t = poses(4, seed=1)
    X = OBJECTS["frustum"]
    uv = project(X, R, t, K)
    for b in range(4):
        rvec, _ = cv2.Rodrigues(R[b].numpy())
        ref, _ = cv2.projectPoints(X.numpy(), rvec, t[b].numpy(), K.numpy(), None)
        np.testing.assert_allclose(uv[b].numpy(), ref[:, 0], atol=1e-6)


def test_reprojection_error_is_zero_at_the_truth_and_passes_gradcheck():
    R, t = poses(3, seed=2)
    X = OBJECTS["box"]
    obs = project(X, R, t, K)
    assert reprojection_error(X, R, t, K, obs).abs().max() < 1e-12
    vis = torch.tensor([1.0, 0, 1, 1, 1, 0, 1, 1]).expand(3, 8)
    obs_noisy = obs + torch.randn(obs.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    tt = t.clone().requires_grad_(True)

    def f(q, tt):
        from anydiff.poses.rotations import sixd_to_matrix
        return reprojection_error(X, sixd_to_matrix(q), tt, K, obs_noisy, vis)

    assert torch.autograd.gradcheck(f, (q, tt))
    # the mean counts visible keypoints only
    e = reprojection_error(X, R, t, K, obs_noisy, vis)
    d = (obs - obs_noisy).norm(dim=-1)
    assert torch.allclose(e, (d * vis).sum(-1) / 6, atol=2e-3)  # smoothing 1e-3 px
    # no visible keypoint: 0, and smooth at 0 (finite gradient)
    assert torch.equal(reprojection_error(X, R, t, K, obs_noisy, torch.zeros(3, 8)), torch.zeros(3))
    t0 = t.clone().requires_grad_(True)
    reprojection_error(X, R, t0, K, obs).sum().backward()
    assert torch.isfinite(t0.grad).all() and t0.grad.abs().max() < 1e-6


# -- symmetric objects -------------------------------------------------------------------------
def test_orbits_of_the_builtin_objects():
    assert symmetry_orbits(OBJECTS["frustum"], SYMMETRIES["frustum"]) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert symmetry_orbits(OBJECTS["box"], None) == [[i] for i in range(8)]
    # the box's corners are invariant under the half-turns about its axes (D2, 4 rotations: two
    # orbits of 4, the corners of each handedness), not under C4
    assert symmetry_orbits(OBJECTS["box"], dihedral_group(2)) == [[0, 3, 5, 6], [1, 2, 4, 7]]
    with pytest.raises(ValueError, match="symmetries"):
        symmetry_orbits(OBJECTS["box"], cyclic_group(4))
    with pytest.raises(ValueError, match="symmetries"):
        symmetry_orbits(OBJECTS["frustum"], dihedral_group(4))  # the flip swaps the two squares


@pytest.mark.parametrize("noise_px,occlusion", [(0.0, 0.0), (2.0, 0.3)])
def test_observations_of_R_and_RS_are_identical(noise_px, occlusion):
    X, G = OBJECTS["frustum"], SYMMETRIES["frustum"]
    R, t = poses(50, seed=3)
    ref = observe_keypoints(X, R, t, K, symmetries=G, noise_px=noise_px, occlusion=occlusion, generator=7)
    for S in G:
        out = observe_keypoints(X, R @ S, t, K, symmetries=G, noise_px=noise_px, occlusion=occlusion, generator=7)
        assert torch.allclose(out[0], ref[0], atol=1e-8) and torch.equal(out[1], ref[1])
    # and the symmetric reprojection error cannot tell them apart either
    e = [reprojection_error(X, R @ S, t, K, ref[0], ref[1], symmetries=G) for S in G]
    assert all(torch.allclose(x, e[0], atol=1e-8) for x in e)
    if noise_px == 0:
        assert e[0].abs().max() < 1e-6
        # without symmetries= the labelled comparison charges the relabelling
        assert reprojection_error(X, R, t, K, ref[0], ref[1]).mean() > 1.0


def test_labelled_keypoints_do_tell_R_from_RS():
    X = OBJECTS["frustum"]
    R, t = poses(20, seed=4)
    S = cyclic_group(4)[1]
    a, _ = observe_keypoints(X, R, t, K, noise_px=0.0, occlusion=0.0, generator=0)
    b, _ = observe_keypoints(X, R @ S, t, K, noise_px=0.0, occlusion=0.0, generator=0)
    assert (a - b).abs().max() > 1.0


def test_canonical_order_is_a_function_of_the_set():
    g = torch.Generator().manual_seed(0)
    uv = torch.randn(10, 8, 2, generator=g, dtype=torch.float64)
    orbits = [[0, 1, 2, 3], [4, 5, 6, 7]]
    shuffled = uv[:, [2, 0, 3, 1, 7, 5, 4, 6]]
    a = uv.gather(-2, canonical_order(uv, orbits)[..., None].expand_as(uv))
    b = shuffled.gather(-2, canonical_order(shuffled, orbits)[..., None].expand_as(uv))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="orbits"):
        canonical_order(uv, [[0, 1, 2]])


def test_canonical_order_keeps_the_orbits_in_register():
    # the frustum seen from within 30 deg of its axis, any spin: top slot k holds the corner above
    # the bottom corner in slot k (index + 4)
    import roma
    g = torch.Generator().manual_seed(1)
    n = 200
    spin = cyclic_group(1).expand(n, 3, 3) @ roma.rotvec_to_rotmat(
        torch.stack([torch.zeros(n), torch.zeros(n), 2 * np.pi * torch.rand(n, generator=g)], -1).double())
    tilt = roma.rotvec_to_rotmat(torch.cat([0.5 * (2 * torch.rand(n, 2, generator=g) - 1), torch.zeros(n, 1)],
                                           -1).double())
    R = tilt @ spin
    t = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64).expand(n, 3)
    perm = canonical_order(project(OBJECTS["frustum"], R, t, K), [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert torch.equal(perm[:, 4:], perm[:, :4] + 4)


# -- the views ---------------------------------------------------------------------------------
def test_make_keypoint_views_shapes_kinds_and_reproducibility():
    pose, cond = make_keypoint_views(64, OBJECTS["box"], generator=5)
    assert pose["rotation"].dims == ("sample", "row", "col") and pose["rotation"].attrs["kind"] == "rotation_matrix"
    assert pose["translation"].shape == (64, 3) and pose["translation"].attrs["kind"] == "position"
    assert cond["keypoints"].dims == ("sample", "keypoint", "uv") and cond["keypoints"].shape == (64, 8, 2)
    assert cond["visible"].shape == (64, 8) and set(np.unique(cond["visible"].values)) <= {0.0, 1.0}
    assert all(v.dtype == np.float64 for v in (*pose.data_vars.values(), *cond.data_vars.values()))
    R = pose["rotation"].values
    np.testing.assert_allclose(np.swapaxes(R, -1, -2) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    z = pose["translation"].values[:, 2]
    assert (z >= 4).all() and (z <= 8).all()
    assert (np.abs(pose["translation"].values[:, :2]) <= 0.1 * z[:, None] + 1e-12).all()
    assert (cond["keypoints"].values[cond["visible"].values == 0] == 0).all()
    again = make_keypoint_views(64, OBJECTS["box"], generator=torch.Generator().manual_seed(5))
    assert pose.identical(again[0]) and cond.identical(again[1])
    other = make_keypoint_views(64, OBJECTS["box"], generator=6)
    assert not np.allclose(other[0]["rotation"].values, R)


def test_noise_and_occlusion_rates_are_right():
    n, X = 4000, OBJECTS["box"]
    pose, cond = make_keypoint_views(n, X, noise_px=2.0, occlusion=0.25, generator=11)
    vis = cond["visible"].values
    p = vis.mean()  # binomial, 32000 draws: sd 0.0024
    assert abs(p - 0.75) < 0.01
    clean = project(X, torch.from_numpy(pose["rotation"].values), torch.from_numpy(pose["translation"].values), K)
    res = (cond["keypoints"].values - clean.numpy())[vis == 1]
    assert abs(res.mean()) < 0.05 and abs(res.std() - 2.0) < 0.05
    # symmetric: the stored rotation is a uniformly random member of {R S}
    G = SYMMETRIES["frustum"]
    pose, cond = make_keypoint_views(2000, OBJECTS["frustum"], symmetries=G, noise_px=0.0, occlusion=0.0,
                                     generator=12)
    R = torch.from_numpy(pose["rotation"].values)
    e = reprojection_error(OBJECTS["frustum"], R, torch.from_numpy(pose["translation"].values), K,
                           torch.from_numpy(cond["keypoints"].values), symmetries=G)
    assert e.max() < 1e-6


def test_bad_input_raises_naming_the_argument():
    R, t = poses(2)
    X = OBJECTS["box"]
    with pytest.raises(ValueError, match="points"):
        project(torch.zeros(8, 2, dtype=torch.float64), R, t, K)
    with pytest.raises(ValueError, match="R"):
        project(X, R[..., :2], t, K)
    with pytest.raises(ValueError, match="R is not a rotation"):
        project(X, 2 * R, t, K)
    with pytest.raises(ValueError, match="reflection"):
        project(X, -R, t, K)
    with pytest.raises(ValueError, match="t "):
        project(X, R, torch.zeros(2, 2, dtype=torch.float64), K)
    with pytest.raises(ValueError, match="behind the camera"):
        project(X, R, t * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64), K)
    assert torch.isfinite(project(X, R, -t, K, min_depth=1e-3)).all()
    with pytest.raises(ValueError, match="K"):
        project(X, R, t, torch.eye(3, dtype=torch.float64) * 2)
    with pytest.raises(ValueError, match="keypoints_2d"):
        reprojection_error(X, R, t, K, torch.zeros(2, 7, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="visible"):
        reprojection_error(X, R, t, K, torch.zeros(2, 8, 2, dtype=torch.float64), torch.ones(2, 7))
    with pytest.raises(ValueError, match="n="):
        make_keypoint_views(0, X)
    with pytest.raises(ValueError, match="object_points"):
        make_keypoint_views(3, torch.zeros(8, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="depth_range"):
        make_keypoint_views(3, X, depth_range=(0.3, 1.0))
    with pytest.raises(ValueError, match="occlusion"):
        make_keypoint_views(3, X, occlusion=1.0)
    with pytest.raises(ValueError, match="noise_px"):
        make_keypoint_views(3, X, noise_px=-1.0)
    with pytest.raises(ValueError, match="symmetries"):
        make_keypoint_views(3, X, symmetries=cyclic_group(4))
