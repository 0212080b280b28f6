"""The three pose pipelines of the benchmarks, at test size: IK for the Panda, object pose from
keypoints, rotation distributions. Each checks what the pipeline promises against its own
reference (the forward kinematics, the reprojection error, the true modes)."""
import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")
pytest.importorskip("roma")

import anydiff as ad  # noqa: E402
from anydiff.poses import camera, metrics, rotations  # noqa: E402

TINY = dict(batch_size=256, hidden=64, depth=2, sampling_steps=20, device="cpu", random_state=0)


def test_ik_guidance_and_refinement_reach_the_target():
    chain = ad.poses.panda()
    gen = torch.Generator().manual_seed(0)
    q = chain.sample_configurations(3000, generator=gen)
    p, R = chain.forward(q)
    X = xr.Dataset({"q": (("sample", "joint"), q.numpy(), {"kind": "angle", "limits": chain.joint_limits.tolist()})})
    cond = xr.Dataset({"p": (("sample", "xyz"), p.numpy(), {"kind": "position"}),
                       "R": (("sample", "r", "c"), R.numpy(), {"kind": "rotation_matrix"})})
    model = ad.PoseDiffusion(max_steps=400, **TINY).fit(X, cond=cond)
    p_t, R_t = chain.forward(chain.sample_configurations(8, generator=gen))
    targets = xr.Dataset({"p": (("sample", "xyz"), p_t.numpy(), {"kind": "position"}),
                          "R": (("sample", "r", "c"), R_t.numpy(), {"kind": "rotation_matrix"})})

    def fk_mm(pose, c):
        return ((chain.forward(pose["q"])[0] - c["p"]) * 1000).pow(2).sum(-1).add(1e-6).sqrt()

    def err(qs):
        pos, rot = ad.poses.kinematics.pose_errors(chain, qs.reshape(-1, 7), p_t.repeat_interleave(8, 0),
                                                   R_t.repeat_interleave(8, 0))
        return pos.median(), rot.median()

    raw = torch.from_numpy(model.sample(cond=targets, n_hypotheses=8, random_state=0)["q"].values)
    guided = torch.from_numpy(model.sample(cond=targets, n_hypotheses=8, guidance=fk_mm, guidance_scale=1e-4,
                                           random_state=0)["q"].values)
    refined = ad.poses.refine_ik(chain, guided.reshape(-1, 7), p_t.repeat_interleave(8, 0),
                                 R_t.repeat_interleave(8, 0), steps=20)
    assert err(guided)[0] < err(raw)[0]
    pos, rot = err(refined)
    # a 400-step model's seeds are rough; 20 DLS steps bring the median solution within a millimetre
    assert pos < 1e-3 and rot < 1e-2 and pos < 0.1 * err(guided)[0]
    assert chain.within_limits(torch.cat([raw.reshape(-1, 7), guided.reshape(-1, 7), refined])).all()


def test_keypoint_pose_guidance_lowers_the_reprojection_error():
    obj, K = camera.OBJECTS["box"], camera.default_intrinsics()
    pose, cond = camera.make_keypoint_views(3000, obj, generator=0)
    model = ad.PoseDiffusion(max_steps=400, **TINY).fit(pose, cond=cond)
    _, test = camera.make_keypoint_views(16, obj, generator=1)

    def reprojection(p, c):
        return camera.reprojection_error(obj, p["rotation"], p["translation"], K, c["keypoints"], c["visible"])

    def mean_error(h):
        return float(reprojection({k: torch.from_numpy(h[k].values) for k in ("rotation", "translation")},
                                  {k: torch.from_numpy(test[k].values)[:, None] for k in ("keypoints", "visible")}).mean())

    raw = model.sample(cond=test, n_hypotheses=4, random_state=0)
    guided = model.sample(cond=test, n_hypotheses=4, guidance=reprojection, guidance_scale=3e-3, random_state=0)
    assert mean_error(guided) < 0.8 * mean_error(raw)
    agg = ad.poses.aggregate(guided, "median")
    np.testing.assert_allclose(np.linalg.det(agg["rotation"].values), 1.0, atol=1e-9)


def test_rotation_mixture_modes_and_weights():
    """Two modes (weights 0.7 / 0.3, blurred by 3 degrees): samples cover both, sit near them and
    split close to the true weights."""
    gen = torch.Generator().manual_seed(0)
    modes = rotations.random_rotations(2, generator=gen)
    n = 4000
    which = (torch.rand(n, generator=gen) < 0.3).long()
    blur = rotations.sixd_to_matrix(rotations.matrix_to_sixd(torch.eye(3, dtype=torch.float64)).expand(n, 6)
                                    + 0.05 * torch.randn(n, 6, generator=gen, dtype=torch.float64))
    R = modes[which] @ blur
    q = rotations.matrix_to_quaternion(R)
    model = ad.PoseDiffusion(max_steps=500, **TINY).fit(q.numpy(), kind="quaternion")
    samples = torch.from_numpy(model.sample(2000, random_state=0))
    cover = metrics.mode_coverage(rotations.quaternion_to_matrix(samples), modes, threshold_deg=15.0)
    assert cover["coverage"] == 1.0 and cover["precision"] > 0.9
    share = cover["counts"] / len(samples)
    assert abs(share[1] - 0.3) < 0.08
