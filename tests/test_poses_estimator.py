"""PoseDiffusion and its adapter: exact round trips of the encoding, samples that respect each
part's geometry, conditioning, guidance, aggregation, save / load and bad input."""
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

xr = pytest.importorskip("xarray")
pytest.importorskip("roma")

import anydiff as ad  # noqa: E402
from anydiff.poses import aggregate  # noqa: E402
from anydiff.poses.encoding import PoseEncoder  # noqa: E402
from anydiff.poses.rotations import geodesic_distance, quaternion_to_matrix, random_rotations  # noqa: E402

SMALL = dict(max_steps=600, batch_size=256, hidden=64, depth=2, sampling_steps=20, device="cpu", random_state=0)


def rot_z(angle):
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros((len(angle), 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1
    return R


def quat_z(angle):
    return np.stack([np.cos(angle / 2), 0 * angle, 0 * angle, np.sin(angle / 2)], axis=-1)


def make_poses(n, seed=0):
    """A pose that the scalar condition c in [-1, 1] decides up to small noise: a joint angle
    pi c / 2 (limits +-2), a wrapping heading pi c, a rotation about z by pi c / 2 (quaternion and
    matrix) and a position (c, 0, 0); keypoints (2, 3) carry a coordinate dim."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, n)
    noise = lambda scale, *shape: scale * rng.standard_normal((n, *shape))  # noqa: E731
    ds = xr.Dataset(
        {"joint": (("sample",), np.pi * c / 2 + noise(0.02), {"kind": "angle", "limits": [-2.0, 2.0]}),
         "heading": (("sample",), np.angle(np.exp(1j * (np.pi * c + noise(0.02)))), {"kind": "angle"}),
         "orientation": (("sample", "q"), quat_z(np.pi * c / 2 + noise(0.02)), {"kind": "quaternion"}),
         "frame": (("sample", "row", "col"), rot_z(np.pi * c / 2), {"kind": "rotation_matrix"}),
         "keypoints": (("sample", "point", "xyz"), np.stack([np.stack([c, 0 * c, 0 * c], -1)] * 2, 1)
                       + noise(0.01, 2, 3), {"kind": "position", "units": "m"})},
        coords={"q": ["w", "x", "y", "z"], "xyz": ["x", "y", "z"], "point": ["tip", "base"]})
    return ds, c[:, None]


@pytest.fixture(scope="module")
def fitted():
    ds, c = make_poses(2000)
    return ad.PoseDiffusion(**SMALL).fit(ds, cond=c), ds


# -- the adapter --------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 12))
def test_encoding_round_trip_is_exact(seed, n):
    """decode(encode(pose)) == pose: quaternions up to sign, matrices, angles (wrapping and
    limited, at the limits too) and positions."""
    gen = torch.Generator().manual_seed(seed)
    R = random_rotations(n * 2, generator=gen).numpy()
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    lim = rng.uniform(-3, 3, n)
    lim[0] = -1.0  # exactly at a limit
    ds = xr.Dataset({"q": (("sample", "c4"), q, {"kind": "quaternion"}),
                     "R": (("sample", "j", "r", "c"), R.reshape(n, 2, 3, 3), {"kind": "rotation_matrix"}),
                     "wrap": (("sample",), rng.uniform(-np.pi, np.pi, n), {"kind": "angle"}),
                     "lim": (("sample",), np.clip(lim, -1, 2.5), {"kind": "angle", "limits": (-1.0, 2.5)}),
                     "full": (("sample",), rng.uniform(0, 2 * np.pi - 1e-6, n),
                              {"kind": "angle", "limits": (0.0, 2 * np.pi)}),
                     "p": (("sample", "k"), rng.standard_normal((n, 5)) * 100, {"kind": "position"})})
    enc = PoseEncoder.fit(ds, "X")
    z = torch.from_numpy(enc.encode(ds))
    assert z.shape == (n, 6 + 12 + 2 + 1 + 2 + 5)
    out = {k: v.numpy() for k, v in enc.decode(z).items()}
    sign = np.sign((out["q"] * q).sum(-1, keepdims=True))
    np.testing.assert_allclose(out["q"] * sign, q, atol=1e-9)
    assert (out["q"][:, 0] >= 0).all()
    np.testing.assert_allclose(out["R"], R.reshape(n, 2, 3, 3), atol=1e-9)
    for name in ("wrap", "lim", "full", "p"):
        np.testing.assert_allclose(out[name], ds[name].values, atol=1e-9 * max(1, np.abs(ds[name].values).max()))


def test_decoding_any_vector_gives_valid_poses():
    """Arbitrary encoded vectors decode to unit quaternions, rotations with det +1 and angles inside
    their limits: what the sampler returns is always a valid pose."""
    ds, _ = make_poses(50)
    enc = PoseEncoder.fit(ds, "X")
    z = 5 * torch.randn(200, enc.width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = enc.decode(z)
    torch.testing.assert_close(out["orientation"].norm(dim=-1), torch.ones(200, dtype=torch.float64))
    R = out["frame"]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(200, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=torch.float64))
    assert ((out["joint"] >= -2) & (out["joint"] <= 2)).all()
    assert ((out["heading"] > -math.pi - 1e-12) & (out["heading"] <= math.pi + 1e-12)).all()


# -- the estimator ------------------------------------------------------------------------------
def test_samples_follow_the_condition_and_keep_the_dataset_form(fitted):
    model, ds = fitted
    c = np.array([[-0.6], [0.0], [0.7]])
    out = model.sample(cond=c, n_hypotheses=16, random_state=1)
    assert set(out.data_vars) == set(ds.data_vars)
    assert out["keypoints"].dims == ("sample", "hypothesis", "point", "xyz")
    assert list(out["xyz"].values) == ["x", "y", "z"] and list(out["point"].values) == ["tip", "base"]
    assert out["keypoints"].attrs == {"kind": "position", "units": "m"}
    assert out["orientation"].shape == (3, 16, 4)
    # each part follows the condition (the truth is pi c / 2, pi c, c)
    truth = np.pi * c / 2
    assert np.abs(out["joint"].values - truth).mean() < 0.15
    heading_err = np.angle(np.exp(1j * (out["heading"].values - np.pi * c)))
    assert np.abs(heading_err).mean() < 0.2
    R_true = torch.from_numpy(rot_z(np.repeat(truth[:, 0], 16))).reshape(3, 16, 3, 3)
    R_q = quaternion_to_matrix(torch.from_numpy(out["orientation"].values))
    assert geodesic_distance(R_q, R_true).mean() < 0.15
    assert geodesic_distance(torch.from_numpy(out["frame"].values), R_true).mean() < 0.15
    assert np.abs(out["keypoints"].values[..., 0] - c[:, :, None]).mean() < 0.1


def test_guidance_pulls_samples_to_the_energy_minimum(fitted):
    """An energy on the decoded joint angle pulls the hypotheses towards its target; the energy
    sees the condition rows that belong to each pose (one per hypothesis)."""
    model, _ = fitted
    c = np.zeros((4, 1))
    seen = []

    def energy(pose, cond):
        seen.append(cond.shape)
        return (pose["joint"] - 0.4 - 0 * cond[:, 0]) ** 2

    plain = model.sample(cond=c, n_hypotheses=8, random_state=2)
    guided = model.sample(cond=c, n_hypotheses=8, guidance=energy, guidance_scale=0.1, random_state=2)
    assert seen and all(s == (32, 1) for s in seen)
    # the model holds the joint near 0 (data noise 0.02 rad): guidance trades that against the energy
    assert np.abs(guided["joint"].values - 0.4).mean() < np.abs(plain["joint"].values - 0.4).mean() - 0.1


def test_aggregation_in_each_geometry(fitted):
    model, _ = fitted
    out = model.sample(cond=np.array([[0.3], [-0.3]]), n_hypotheses=8, random_state=3)
    for method in ("mean", "median", "medoid"):
        agg = aggregate(out, method)
        assert "hypothesis" not in agg.dims and agg["orientation"].shape == (2, 4)
        np.testing.assert_allclose(np.linalg.norm(agg["orientation"].values, axis=-1), 1, atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(agg["frame"].values), 1, atol=1e-9)
    # identical hypotheses aggregate to themselves
    same = out.isel(hypothesis=[0] * 5)
    agg = aggregate(same, "mean")
    for name in ("joint", "heading", "keypoints", "frame"):
        np.testing.assert_allclose(agg[name].values, same[name].isel(hypothesis=0).values, atol=1e-9)
    q = agg["orientation"].values
    q0 = same["orientation"].isel(hypothesis=0).values
    np.testing.assert_allclose(np.abs((q * q0).sum(-1)), 1, atol=1e-9)


def test_save_load_gives_the_same_samples(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "pose.anydiff"
    model.save(path)
    loaded = ad.load(path)
    c = np.array([[0.1], [0.9]])
    a = model.sample(cond=c, n_hypotheses=3, random_state=5)
    b = loaded.sample(cond=c, n_hypotheses=3, random_state=5)
    xr.testing.assert_identical(a, b)


def test_plain_arrays_in_and_out_and_unconditional():
    rng = np.random.default_rng(0)
    angles = np.concatenate([rng.normal(-1, 0.05, 300), rng.normal(1, 0.05, 300)])[:, None]
    model = ad.PoseDiffusion(**SMALL).fit(angles, kind="angle")
    out = model.sample(400, random_state=0)
    assert isinstance(out, np.ndarray) and out.shape == (400, 1)
    near = np.minimum(np.abs(out - 1), np.abs(out + 1))
    assert (near < 0.3).mean() > 0.9 and 0.3 < (out > 0).mean() < 0.7  # both modes, little between
    assert model.sample(5, n_hypotheses=2, random_state=0).shape == (5, 2, 1)


def test_dataset_condition_sets_the_sample_coordinate(fitted):
    ds, c = make_poses(300, seed=1)
    cond = xr.Dataset({"c": (("sample",), c[:, 0], {"kind": "position"})}, coords={"sample": np.arange(300) + 100})
    model = ad.PoseDiffusion(**{**SMALL, "max_steps": 50}).fit(ds[["joint"]], cond=cond)
    out = model.sample(cond=cond.isel(sample=[3, 4]), random_state=0)
    assert list(out["sample"].values) == [103, 104] and out["joint"].dims == ("sample",)


# -- bad input ----------------------------------------------------------------------------------
def _one(values, dims, **attrs):
    return xr.Dataset({"v": (dims, values, attrs)})


@pytest.mark.parametrize("X,match", [
    (lambda: _one(np.zeros((4, 3)), ("sample", "d")), r"'v' has no attrs\['kind'\]"),
    (lambda: _one(np.zeros((4, 3)), ("sample", "d"), kind="euler"), r"'v' has attrs\['kind'\] = 'euler'"),
    (lambda: _one(np.zeros((4, 3)), ("d", "sample"), kind="position"), "first dim must be 'sample'"),
    (lambda: _one(np.zeros((4, 3)), ("sample", "d"), kind="quaternion"), r"'v' of kind 'quaternion' must have shape"),
    (lambda: _one(np.r_[[[1.0, 0, 0, 0]] * 3, [[0.0, 0, 0, 0]]], ("sample", "q"), kind="quaternion"), "zero"),
    (lambda: _one(np.array([np.diag([1.0, 1, -1])] * 4), ("sample", "r", "c"), kind="rotation_matrix"), "'v'"),
    (lambda: _one(np.array([np.eye(3) * 2] * 4), ("sample", "r", "c"), kind="rotation_matrix"), "'v'"),
    (lambda: _one(np.array([0.0, 0.5, 1.5, 0.2]), ("sample",), kind="angle", limits=(-1, 1)), "outside its limits"),
    (lambda: _one(np.array([0.0, 0.5, 0.2]), ("sample",), kind="angle", limits=(1, -1)), "low < high"),
    (lambda: _one(np.array([0.0, np.nan, 0.2]), ("sample",), kind="angle"), "NaN or infinite values"),
    (lambda: np.zeros((4, 3)), "kind="),
])
def test_bad_poses_name_the_variable(X, match):
    with pytest.raises(ValueError, match=match):
        ad.PoseDiffusion(**{**SMALL, "max_steps": 2}).fit(X())


def test_non_unit_quaternions_are_normalized_with_a_warning():
    q = np.array([[1.1, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    with pytest.warns(UserWarning, match="'v'"):
        enc = PoseEncoder.fit(_one(q, ("sample", "q"), kind="quaternion"), "X")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = enc.decode(torch.from_numpy(enc.encode(_one(q, ("sample", "q"), kind="quaternion"))))["v"]
    np.testing.assert_allclose(out.numpy()[0], [1, 0, 0, 0], atol=1e-9)
    # fit checks (and warns about) the data once, not once per pass over it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ad.PoseDiffusion(**{**SMALL, "max_steps": 2}).fit(_one(q, ("sample", "q"), kind="quaternion"))
    assert len([w for w in caught if "'v'" in str(w.message)]) == 1


def test_bad_conditions_and_sampling_arguments(fitted):
    model, ds = fitted
    with pytest.raises(ValueError, match="cond has 3 rows but X has 2000"):
        ad.PoseDiffusion(**{**SMALL, "max_steps": 2}).fit(ds, cond=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="give cond"):
        model.sample(4)
    with pytest.raises(ValueError, match="n_hypotheses"):
        model.sample(cond=np.zeros((2, 1)), n_hypotheses=0)
    with pytest.raises(ValueError, match="n_samples=3 but cond has 2 rows"):
        model.sample(3, cond=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="guidance must be a callable"):
        model.sample(cond=np.zeros((2, 1)), guidance="fk")
    with pytest.raises(ValueError, match=r"NaN"):
        model.sample(cond=np.array([[np.nan]]))
    with pytest.raises(ValueError, match="one value per sample"):
        model.sample(cond=np.zeros((2, 1)), guidance=lambda pose, cond: pose["joint"].sum())
    unconditional = ad.PoseDiffusion(**{**SMALL, "max_steps": 2}).fit(ds[["joint"]])
    with pytest.raises(ValueError, match="fitted without cond"):
        unconditional.sample(2, cond=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="n_samples is needed"):
        unconditional.sample()
    with pytest.raises(ValueError, match="lacks the variable 'c'"):
        ad.PoseDiffusion(**{**SMALL, "max_steps": 2}).fit(ds[["joint"]], cond=xr.Dataset(
            {"c": (("sample",), np.zeros(2000), {"kind": "position"})})).sample(
            cond=xr.Dataset({"d": (("sample",), np.zeros(2), {"kind": "position"})}))


def test_the_core_does_not_import_the_pose_libraries():
    """xarray, roma and pytorch-kinematics come with anydiff[poses]; the core and the other
    estimators load none of them, and ad.poses loads pytorch-kinematics only for URDF robots."""
    import subprocess
    import sys

    code = ("import sys, anydiff as ad; ad.VectorDiffusion; ad.sample; ad.TabularDiffusion; "
            "assert not {'xarray', 'roma', 'pytorch_kinematics'} & set(sys.modules), sys.modules.keys(); "
            "ad.poses.panda(); assert 'pytorch_kinematics' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_distilled_students_sample_conditional_poses(fitted, tmp_path):
    """A 4-step student of the conditional model follows the condition and survives save / load."""
    model, ds = fitted
    _, c = make_poses(2000)
    student_model = ad.load(_saved(model, tmp_path))
    student_model.distill(ds, cond=c, steps=4, teacher_steps=16, steps_per_round=150)
    assert sorted(student_model.students_) == [4, 8]
    cond = np.array([[-0.5], [0.5]])
    out = student_model.sample(cond=cond, n_hypotheses=16, steps=4, random_state=0)
    assert np.abs(out["joint"].values - np.pi * cond / 2).mean() < 0.25
    again = ad.load(_saved(student_model, tmp_path)).sample(cond=cond, n_hypotheses=16, steps=4, random_state=0)
    xr.testing.assert_identical(out, again)
    with pytest.raises(ValueError, match="give cond exactly when fit had cond"):
        student_model.distill(ds, steps=4)


def _saved(model, tmp_path):
    path = tmp_path / f"m{id(model)}.anydiff"
    model.save(path)
    return path
